"""hookline dispatcher: webhooks → routed jobs; retries, delays and operator commands."""
