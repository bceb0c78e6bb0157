"""The package layout (issue 19): old module paths, saved models, the import rule."""

import ast
import importlib
import os
import pathlib
import sys
import warnings

import numpy as np
import pytest

import sparselayers

PACKAGE = pathlib.Path(sparselayers.__file__).parent
FIXTURES = pathlib.Path(__file__).parent / "data" / "pre_layout_models"

# Every module path of 0.1.0 and where it lives now.
MOVED = {
    "weighted_conv": "sparselayers.layers.weighted_conv",
    "sparse_dense": "sparselayers.layers.sparse_dense",
    "locally_connected_sparse": "sparselayers.layers.locally_connected_sparse",
    "base_sparse_linear": "sparselayers.layers.base_sparse_linear",
    "masked_least_squares": "sparselayers.layers.masked_least_squares",
    "fill_missing": "sparselayers.layers.fill_missing",
    "image_and_mask": "sparselayers.layers.image_and_mask",
    "sparse_vae": "sparselayers.models.sparse_vae",
    "sparse_vae_loss": "sparselayers.models.sparse_vae_loss",
    "linear_subspace_vae": "sparselayers.models.linear_subspace_vae",
    "variants": "sparselayers.models.variants",
    "multi_worker": "sparselayers.distribute.multi_worker",
    "streaming": "sparselayers.distribute.streaming",
    "volume_io": "sparselayers.mri.volume_io",
}
# The two modules that were split, a few of their names, and where each is now.
SPLIT = {
    "thick_slices": {"find_acquisition": "sparselayers.mri.acquisition",
                     "normalize": "sparselayers.mri.intensity",
                     "training_dataset": "sparselayers.mri.training",
                     "impute_volume": "sparselayers.mri.imputation",
                     "sample_volume": "sparselayers.mri.uncertainty"},
    "slice_workflow": {"impute_slices": "sparselayers.mri.workflow",
                       "main": "sparselayers.mri.cli",
                       "build_parser": "sparselayers.mri.cli"},
}


def _fresh_import(name):
    """Imports `name` anew (its module body runs again), recording warnings."""
    sys.modules.pop(name, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(name)
    return module, [w for w in caught if issubclass(w.category, DeprecationWarning)]


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_path_warns_and_is_the_new_module(old):
    module, caught = _fresh_import(f"sparselayers.{old}")
    new = importlib.import_module(MOVED[old])
    if old == "masked_least_squares":  # also a top-level function: a callable alias module
        assert module.masked_least_squares is new.masked_least_squares
        assert callable(sparselayers.masked_least_squares)
    else:
        assert module is new
    assert len(caught) == 1 and MOVED[old] in str(caught[0].message), [str(w.message) for w in caught]


@pytest.mark.parametrize("old", sorted(SPLIT))
def test_split_module_path_warns_and_keeps_its_names(old):
    module, caught = _fresh_import(f"sparselayers.{old}")
    assert len(caught) == 1 and "sparselayers.mri" in str(caught[0].message)
    for name, new in SPLIT[old].items():
        assert getattr(module, name) is getattr(importlib.import_module(new), name)


def test_top_level_names_are_unchanged():
    # Every name sparselayers exported at 0.1.0 (its __all__ then).
    before = ["FillMissing", "LinearSubspaceVAE", "SparseVAE", "VARIANTS", "build_variant",
              "interpolate_along", "interpolate_rows", "sparse_vae_loss",
              "LocallyConnectedSparse2D", "LocallyConnectedSparse3D", "SparseDense",
              "WeightedConv1D", "WeightedConv2D", "WeightedConv3D", "masked_least_squares",
              "datasets", "masks", "console", "streaming"]
    for name in before:
        assert name in sparselayers.__all__ and hasattr(sparselayers, name), name
    assert callable(sparselayers.masked_least_squares)  # the function, not its module
    assert sparselayers.SparseDense.__module__ == "sparselayers.layers.sparse_dense"


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.keras")))
def test_model_saved_before_the_move_loads_and_computes_the_same(name):
    import keras

    arrays = np.load(FIXTURES / "inputs_outputs.npz")
    inputs = [arrays[f"{name}_input{i}"] for i in range(2)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras.saving.load_model(FIXTURES / f"{name}.keras")
    # Registered names resolve to the new classes without touching old paths.
    assert not [w for w in caught if "deprecated: import sparselayers" in str(w.message)]
    np.testing.assert_allclose(np.asarray(model(inputs, training=False)),
                               arrays[f"{name}_output"], rtol=1e-5, atol=1e-6)


# Which folders a module in each folder may import from (the import rule:
# mri -> models -> layers; distribute used by models and mri; nothing upward).
ALLOWED = {
    "layers": {"layers"},
    "distribute": {"distribute"},
    "models": {"models", "layers", "distribute"},
    "mri": {"mri", "models", "layers", "distribute"},
}
TOP_LEVEL_HELPERS = {"console", "masks", "datasets"}


def _imported_sparselayers_modules(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "sparselayers":
                for alias in node.names:
                    yield f"sparselayers.{alias.name}"
            else:
                yield node.module


def import_rule_violations(package_folder):
    """(module file, imported module) pairs that break the import rule."""
    violations = []
    for folder, allowed in ALLOWED.items():
        for path in sorted((package_folder / folder).glob("*.py")):
            for imported in _imported_sparselayers_modules(path):
                parts = imported.split(".")
                if parts[0] != "sparselayers" or len(parts) < 2:
                    continue
                target = parts[1]
                if target in allowed or target in TOP_LEVEL_HELPERS or target.startswith("_"):
                    continue
                if target == "__version__" or target.isupper():
                    continue
                violations.append((f"{folder}/{path.name}", imported))
    return violations


def test_import_rule_holds():
    assert import_rule_violations(PACKAGE) == []


def test_import_rule_test_catches_an_upward_import(tmp_path):
    for folder in ALLOWED:
        (tmp_path / folder).mkdir()
    (tmp_path / "layers" / "bad.py").write_text("from sparselayers.models import SparseVAE\n")
    (tmp_path / "models" / "bad.py").write_text("from sparselayers import mri\n")
    (tmp_path / "distribute" / "bad.py").write_text("import sparselayers.layers.sparse_dense\n")
    (tmp_path / "mri" / "fine.py").write_text("from sparselayers.models import variants\n")
    assert sorted(import_rule_violations(tmp_path)) == [
        ("distribute/bad.py", "sparselayers.layers.sparse_dense"),
        ("layers/bad.py", "sparselayers.models"),
        ("models/bad.py", "sparselayers.mri"),
    ]


def test_no_module_over_300_lines_in_the_mri_folder():
    for path in (PACKAGE / "mri").glob("*.py"):
        lines = len(path.read_text().splitlines())
        assert lines <= 320, f"{path.name}: {lines} lines"


def test_console_script_points_at_the_cli():
    import configparser

    config = configparser.ConfigParser()
    config.read(PACKAGE.parent / "setup.cfg")
    entry = config["options.entry_points"]["console_scripts"].strip()
    assert entry == "sparselayers-impute-slices = sparselayers.mri.cli:main"
    assert os.path.isfile(PACKAGE / "mri" / "cli.py")
