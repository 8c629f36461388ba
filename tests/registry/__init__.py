"""Test helpers for images and registries: OCI layouts, a loopback docker-registry, a fault-injecting proxy."""
