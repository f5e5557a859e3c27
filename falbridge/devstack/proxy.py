"""nginx in front of a receiver, from the same template docker-compose gives the official
nginx image (`nginx.conf.template`, package data beside this module).

The template is an http{}-level snippet with `${NAME}` placeholders; `render` substitutes
them as the image's envsubst does, and `NginxProxy` wraps the result in a private main
configuration (prefix, temporary files, pid and error log under the stack's run directory)
and runs Debian's nginx in the foreground as a child process. Nothing here runs in
production: production runs the template itself (docs/deployment.md).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

TEMPLATE_NAME = "nginx.conf.template"
# The variables the template takes: the listen port and gunicorn's host:port.
TEMPLATE_VARIABLES = ("NGINX_PORT", "NGINX_UPSTREAM")
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def template_text() -> str:
    return (resources.files("falbridge.devstack") / TEMPLATE_NAME).read_text(encoding="utf-8")


def render(template: str, values: Mapping[str, str]) -> str:
    """`template` with every `${NAME}` replaced by `values[NAME]`; a placeholder without a
    value, or a value without a placeholder, is an error (envsubst would leave the first
    empty and nginx refuse the result)."""
    used = set(_PLACEHOLDER.findall(template))
    missing, unused = sorted(used - set(values)), sorted(set(values) - used)
    if missing or unused:
        raise ValueError(f"nginx template: no value for {missing}, no placeholder for {unused}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def find_nginx() -> str | None:
    """The nginx binary: on PATH, else Debian's /usr/sbin/nginx (not on a user's PATH)."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


class NginxProxy:
    """The files of one nginx listening on `port` and proxying to `upstream` (host:port):
    everything under `prefix`, nothing in /etc/nginx or /var/lib/nginx."""

    def __init__(self, prefix: Path, port: int, upstream: str) -> None:
        self.prefix = prefix
        self.port = port
        self.upstream = upstream
        self.conf = prefix / "nginx.conf"
        self.pid_file = prefix / "nginx.pid"
        self.error_log = prefix / "error.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write(self) -> Path:
        """Render the template and write the main configuration around it."""
        for name in _TEMP_DIRS:
            (self.prefix / "temp" / name).mkdir(parents=True, exist_ok=True)
        site = self.prefix / "falbridge.conf"
        site.write_text(
            render(template_text(), {"NGINX_PORT": str(self.port), "NGINX_UPSTREAM": self.upstream})
        )
        temp_paths = "".join(f"    {name}_temp_path {self.prefix / 'temp' / name};\n" for name in _TEMP_DIRS)
        # As root, nginx's workers would switch to `nobody`, who cannot enter a private run
        # directory; this nginx serves one test or demo and stays the caller's user.
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"{user}worker_processes 1;\n"
            f"pid {self.pid_file};\n"
            f"error_log {self.error_log} warn;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            f"{temp_paths}"
            f"    include {site};\n"
            "}\n"
        )
        return self.conf

    def argv(self, binary: str) -> tuple[str, ...]:
        """nginx in the foreground (`daemon off`), so it is a child that can be reaped."""
        return (
            binary,
            *("-p", f"{self.prefix}/", "-c", str(self.conf), "-e", str(self.error_log)),
            *("-g", "daemon off;"),
        )
