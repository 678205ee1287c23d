"""One router per resource: health, models, keys, inference."""
