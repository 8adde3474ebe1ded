"""A/B updates on the box: the signed bundle, the two root slots and their boot entries, applying a bundle to the
slot that is not running, and the trial boot that blesses it or lets systemd-boot fall back.

Nothing here touches the data partition: the state lives on /var across updates and rollbacks.
"""
