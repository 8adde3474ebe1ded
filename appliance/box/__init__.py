"""Running the whole box on one machine without systemd (``appliance up``)."""
