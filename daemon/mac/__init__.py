"""This Mac: the launchd agent (its plist and launchctl) and `doctor`."""
