"""The deployment's secret key: set, or generated once on the embedded default."""

from __future__ import annotations

import threading

import pytest

from falbridge.config import Config, ConfigError
from falbridge.secret_key import GENERATED_FILE, derived_keys


def test_a_set_key_derives_one_key_per_purpose_and_configured_key():
    cfg = Config.from_environ({"FALBRIDGE_SECRET_KEY": f"{'a' * 32},{'b' * 32}"})
    first, second = derived_keys(cfg, "one purpose")
    assert first != second and derived_keys(cfg, "another purpose")[0] != first
    assert derived_keys(cfg, "one purpose") == (first, second)


def test_keys_shorter_than_32_characters_are_refused_without_being_quoted():
    with pytest.raises(ConfigError, match="FALBRIDGE_SECRET_KEY: key 2 is shorter than 32") as caught:
        Config.from_environ({"FALBRIDGE_SECRET_KEY": f"{'a' * 32},short-secret"})
    assert "short-secret" not in str(caught.value)


def test_outside_the_embedded_default_a_key_must_be_set(tmp_path):
    cfg = Config.from_environ({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    with pytest.raises(ConfigError, match="FALBRIDGE_SECRET_KEY: required"):
        derived_keys(cfg, "purpose")


def test_the_embedded_default_generates_one_key_that_every_process_shares(tmp_path):
    cfg = Config.from_environ({"FALBRIDGE_VAR_DIR": str(tmp_path)})
    seen: list[bytes] = []
    threads = [threading.Thread(target=lambda: seen.append(derived_keys(cfg, "p")[0])) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 1 and (tmp_path / GENERATED_FILE).stat().st_mode & 0o777 == 0o600
    assert derived_keys(Config.from_environ({"FALBRIDGE_VAR_DIR": str(tmp_path)}), "p")[0] == seen[0]
