"""The local platform: a Functions + Durable host, an ARM fleet simulator, Azurite glue.

None of this is deployed (see .funcignore); the app itself never imports it.
"""
