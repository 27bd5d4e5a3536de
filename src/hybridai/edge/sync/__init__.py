"""Moving the backlog to the cloud: the uploader, the batches' wire form, the sync window."""
