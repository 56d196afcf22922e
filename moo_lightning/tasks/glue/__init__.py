"""Few-shot GLUE fine-tuning with the supervised contrastive loss split into two objectives."""
