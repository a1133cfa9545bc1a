"""HTTP layer of the issuer: dependencies, request/response models, routes."""
