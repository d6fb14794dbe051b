"""Our top-level `kernels` package must not look like the PyPI `kernels` distribution."""
import importlib.util


def test_transformers_does_not_think_hub_kernels_is_installed():
    import kernels  # noqa: F401  ours, importable
    from transformers.utils import import_utils
    assert importlib.util.find_spec("kernels") is not None
    assert import_utils.is_kernels_available() is False
