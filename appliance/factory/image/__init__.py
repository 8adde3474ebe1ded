"""``appliance build image``: Debian packages + runtime wheels + model store -> bootable GPT disk image."""
