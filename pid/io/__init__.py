"""What comes from and goes to files: checkpoints, the local hub cache, images, caption embeddings."""
