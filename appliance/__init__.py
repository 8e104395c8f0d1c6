"""Putting Holdfast on a box: install/uninstall, systemd units, doctor checks, the demo supervisor.

Sits beside `cli` at the top of the dependency chain (config <- vault <- recorder/api <- appliance
<- cli): the doctor and the demo need the recorder and the API, which `vault` must never import.
"""
