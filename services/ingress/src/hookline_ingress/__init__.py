"""hookline ingress: ``POST /webhook`` → the ``webhook.received`` stream."""
