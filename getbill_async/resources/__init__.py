"""What to ask the API: one module per resource."""
