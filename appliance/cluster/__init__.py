"""Several boxes as one endpoint: an existing router (vllm-router) in front, started and checked from here.

Nothing on the box imports this package or the router: it runs on whichever
host fronts the boxes, and the router is a separate process.
"""
