"""Dataset plugins: one module per dataset family, each registering LightningDataModules."""
