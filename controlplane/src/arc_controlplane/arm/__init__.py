"""Azure Resource Manager conventions shared by every management route: resource ids,
api-versions, error bodies."""
