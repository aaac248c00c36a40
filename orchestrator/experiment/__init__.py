"""What a sweep leaves on storage, read back: storage access (local, NFS, S3), the results table,
ranked trial checkpoints, and a checkpoint loaded as a model."""
