"""The admin API's request and response models, one family per entity."""
