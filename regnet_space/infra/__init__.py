"""File infrastructure: safe reading and parsing, YAML emitting, text safety, whole outputs.

The lowest layer, importable by every side: the standard library and PyYAML only. It imports
no other side of the package and never imports torch or numpy; the errors it raises are the
base types of `errors`, or a type its caller names.
"""
