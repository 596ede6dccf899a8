"""The `lgenode` command: one entry point that mounts each package's own commands.

Kept separate from `node`, `models` and `pipeline` so that the dependency rule holds
(node and pipeline never import each other); only this dispatcher sees all three.
"""
