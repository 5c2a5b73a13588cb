"""The training system: LightningModule, losses, checkpoints."""
