"""falbridge's own copy of result files: fal's CDN keeps them for a while, the job history
for good. `backend` chooses where (FALBRIDGE_STORAGE_URL: a directory or an S3 bucket),
`store` is the step that downloads a completed job's files into it (a Celery task of its
own), `sniff` says what the bytes are. See docs/storage.md."""
