"""The box's health record: written by the monitor and the supervisor, read by the server, console and CLI.

It sits below both the server and the monitor so neither imports the other.
"""
