"""HTTP plumbing shared by the blueprints: problem responses, authentication, JSON bodies."""
