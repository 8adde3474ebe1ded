"""The web console under /console: first-boot setup, sign-in, dashboard, playground, keys, health, settings.

Pages are rendered on the box (Jinja2) with a little JavaScript per page
for streaming, charts and copy buttons; every asset is served from here, and
a strict Content-Security-Policy allows nothing else.
"""
