"""A registry client (the OCI distribution API) and image assembly without a Docker engine."""

from backends.oci.client import Blob, Registry, RegistryDenied
from backends.oci.reference import ImageRef, parse_reference

__all__ = ["Blob", "ImageRef", "Registry", "RegistryDenied", "parse_reference"]
