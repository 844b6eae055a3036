"""ComfyUI entry point: ComfyUI imports this folder as a package and reads the mappings.

They are loaded on first access (a module __getattr__, PEP 562), so `import cvae_art.vae_core` or
the `cvae` command never pays for the node pack, nor registers model folders outside ComfyUI.
"""
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
WEB_DIRECTORY = "./web"  # the Latent Explorer's page code; ComfyUI serves every .js below it


def __getattr__(name: str):
    if name in __all__:
        from . import nodes

        return getattr(nodes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
