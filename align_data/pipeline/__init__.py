"""Plan → run shards (local or Ray) → write shards atomically → manifest; resume and progress."""
