"""FastAPI service that evaluates served models on encrypted inputs."""
