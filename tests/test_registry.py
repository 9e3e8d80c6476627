"""The one Registry type: lookup, the one unknown-name error, labels for the UI."""

from __future__ import annotations

import pytest
import scan

from workbench.registry import Registry, check_choice, unknown_choice


def make() -> Registry:
    registry = Registry("solver")
    registry.add("ddim", 1, label="DDIM")
    registry.add("heun", 2)

    @registry.register("euler", label="Euler")
    def euler():
        return 3

    return registry


def test_lookup_order_and_mapping_behaviour():
    registry = make()
    assert list(registry) == ["ddim", "heun", "euler"] and len(registry) == 3
    assert registry["ddim"] == 1 and registry["euler"]() == 3
    assert "heun" in registry and "nope" not in registry and ["a"] not in registry
    assert dict(registry.items())["heun"] == 2


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"^unknown solver 'ddpm'; choose from ddim, heun, euler$"):
        make()["ddpm"]
    with pytest.raises(ValueError, match="unknown solver"):
        make().check("x")
    with pytest.raises(ValueError, match=r"unknown solver \['x'\]"):
        make()[["x"]]  # unhashable: the same error, not a TypeError


def test_labels_default_to_the_name_or_the_entry_label():
    registry = make()

    class Spec:
        label = "Spec label"

    registry.add("spec", Spec())
    assert registry.labels() == {
        "ddim": "DDIM",
        "heun": "heun",
        "euler": "Euler",
        "spec": "Spec label",
    }
    assert registry.options(["euler", "ddim"]) == {"Euler": "euler", "DDIM": "ddim"}
    assert registry.label("heun") == "heun"


def test_names_are_registered_once_and_must_be_strings():
    registry = make()
    with pytest.raises(ValueError, match="'ddim' is registered twice"):
        registry.add("ddim", 5)
    with pytest.raises(ValueError, match="non-empty string"):
        registry.add("", 5)


def test_check_choice_for_fixed_tuples():
    assert check_choice("form", "noise", ("noise", "data")) == "noise"
    with pytest.raises(ValueError, match=r"^unknown form 'v'; choose from noise, data$"):
        check_choice("form", "v", ("noise", "data"))
    assert str(unknown_choice("grid", 3, ["a"])) == "unknown grid 3; choose from a"


def test_no_hand_written_choose_from_messages_remain():
    """Every unknown-name error in the package comes from workbench.registry."""
    offenders = [
        where
        for where, line in scan.package_lines(skip="registry.py")
        if "choose from" in line and ("raise" in line or 'f"' in line)
    ]
    assert offenders == []


def test_temporary_registration_is_undone_even_on_error():
    registry = make()
    with pytest.raises(RuntimeError), registry.temporarily("broken", 9, label="Broken"):
        assert registry["broken"] == 9 and registry.label("broken") == "Broken"
        raise RuntimeError
    assert "broken" not in registry and list(registry) == ["ddim", "heun", "euler"]
