"""The node pack: thin adapters from ComfyUI types to vae_core calls."""
NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
