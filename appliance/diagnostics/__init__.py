"""Vendor diagnostics: collectors gather, rules redact, the admin reviews, age encrypts to the vendor's key.

Below the server (the console and the support routes use it) and above the
core it reads (health record, store manifests, SKU, settings). A released
bundle is a file the admin hands over; the one thing that leaves the box by
itself is the phone-home summary (``phonehome``), and only once the admin
turns it on.
"""
