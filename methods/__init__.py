"""Method plugins: one module per method, each registering a LightningModule with ``@register_method``."""
