FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY falbridge ./falbridge
COPY models ./models
COPY worker ./worker
COPY webhooks ./webhooks
COPY sandbox ./sandbox
COPY migrations ./migrations
# Installed as one package, falbridge (the folders above become its subpackages), with
# boto3 for an S3 FALBRIDGE_STORAGE_URL. /data/files: the stored result files' volume.
RUN pip install '.[s3]' && useradd --create-home --uid 10001 falbridge \
    && mkdir -p /data/files && chown falbridge /data/files
USER falbridge
EXPOSE 8000
CMD ["falbridge", "serve", "--host", "0.0.0.0", "--port", "8000"]
