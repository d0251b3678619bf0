"""The measure registry and the Measure record: validation, lookup, selection, provenance."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from pydantic import BaseModel, ConfigDict, Field

from icc_bench import Measure, Registry
from icc_bench.measure import InvalidMeasureError, InvalidSettingsError
from icc_bench.registry import PluginInfo, RegistrationError, UnknownMeasureError


class KSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    k: int = Field(30, ge=1)
    agg: str = "median"


class MutableSettings(BaseModel):
    k: int = 30


def selectivity(ctx, settings) -> float:
    """Neuron-level subclass selectivity.

    More text that is not the summary line.
    """
    return 0.0


def make_measure(name: str = "c1", **overrides) -> Measure:
    fields = dict(
        name=name, family="intraclass clustering", higher_is_better=True, needs_hierarchy=True,
        fn=selectivity, settings=KSettings(),
    )
    return Measure(**{**fields, **overrides})


def registry_of(*names: str) -> Registry:
    registry = Registry()
    for name in names:
        registry.add(make_measure(name))
    return registry


PLUGIN_A = PluginInfo("plugin_a", "entry point", "plugin_a", distribution="plugin-a", version="1.2")
PLUGIN_B = PluginInfo("plugin_b", "file", "/tmp/plugin_b.py")


# -- Measure fields ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"family": ""}, "family"),
        ({"family": None}, "family"),
        ({"higher_is_better": 1}, "higher_is_better"),
        ({"higher_is_better": "yes"}, "higher_is_better"),
        ({"needs_hierarchy": None}, "needs_hierarchy"),
        ({"fn": "selectivity"}, "fn"),
        ({"fn": lambda ctx: 0.0}, "fn"),
        ({"settings": {"k": 30}}, "settings"),
        ({"settings": MutableSettings()}, "frozen"),
    ],
)
def test_measure_refuses_malformed_fields(overrides, field):
    with pytest.raises(InvalidMeasureError, match=field) as raised:
        make_measure("c1", **overrides)
    assert "'c1'" in str(raised.value)


def test_description_defaults_to_first_docstring_line_and_can_be_given():
    assert make_measure().description == "Neuron-level subclass selectivity."
    assert make_measure(description="Mine.").description == "Mine."
    assert make_measure(fn=lambda ctx, s: 0.0).description == ""


def test_settings_hash_is_sha256_of_canonical_name_and_settings():
    measure = make_measure("c1", settings=KSettings(k=5))
    canonical = '{"measure":"c1","settings":{"agg":"median","k":5}}'
    assert measure.settings_hash == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert json.loads(canonical)["settings"] == measure.settings.model_dump()


def test_settings_hash_changes_with_name_and_settings_only():
    base = make_measure("c1")
    assert make_measure("c1", family="other", description="x").settings_hash == base.settings_hash
    assert make_measure("c3").settings_hash != base.settings_hash
    assert base.with_settings(k=5).settings_hash != base.settings_hash
    assert base.with_settings(k=30).settings_hash == base.settings_hash


def test_a_revision_above_0_enters_the_hash_and_0_leaves_it_as_it_was():
    base = make_measure("c1", settings=KSettings(k=5))
    revised = make_measure("c1", settings=KSettings(k=5), revision=2)
    assert make_measure("c1", settings=KSettings(k=5), revision=0).settings_hash == base.settings_hash
    canonical = '{"measure":"c1","revision":2,"settings":{"agg":"median","k":5}}'
    assert revised.settings_hash == hashlib.sha256(canonical.encode()).hexdigest()[:16] != base.settings_hash
    assert revised.with_settings(k=5).settings_hash == revised.settings_hash  # a settings change keeps the revision
    for bad in (-1, 1.5, "2", True):
        with pytest.raises(InvalidMeasureError, match=r"measure 'c1': revision must be an integer >= 0"):
            make_measure("c1", revision=bad)


def test_with_settings_validates_through_the_settings_model():
    base = make_measure("c1")
    changed = base.with_settings(k=5, agg="mean")
    assert changed.settings == KSettings(k=5, agg="mean")
    assert base.settings == KSettings()  # the original is untouched
    assert (changed.name, changed.fn, changed.family) == (base.name, base.fn, base.family)
    with pytest.raises(InvalidSettingsError, match=r"'c1' has no setting 'kk'; its settings are: k, agg"):
        base.with_settings(kk=5)
    with pytest.raises(InvalidSettingsError, match=r"'c1': setting 'k': .*greater than or equal to 1.*got 0"):
        base.with_settings(k=0)


# -- add ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["C1", "1c", "my-measure", "my measure", "", "_c1", "c1 ", "c1\n"])
def test_add_refuses_names_that_are_not_snake_case(name):
    with pytest.raises(RegistrationError, match="snake_case"):
        Registry().add(make_measure(name))


def test_add_refuses_what_is_not_a_measure():
    with pytest.raises(TypeError, match="takes a Measure"):
        Registry().add(selectivity)


def test_add_keeps_registration_order_and_returns_the_stored_item():
    registry = Registry()
    stored = registry.add(make_measure("sharpness"))
    registry.add(make_measure("c1"))
    assert registry.names() == ["sharpness", "c1"]
    assert registry.get("sharpness") is stored
    assert "c1" in registry and "c2" not in registry
    assert len(registry) == 2


def test_plugin_scope_attributes_each_item_to_its_plugin():
    registry = Registry()
    registry.add(make_measure("direct"))
    with registry.plugin_scope(PLUGIN_A):
        registry.add(make_measure("c1"))
    with registry.plugin_scope(PLUGIN_B):
        registry.add(make_measure("c3"))
    assert registry.get("direct").plugin is None
    assert registry.get("c1").plugin == PLUGIN_A
    assert registry.get("c3").plugin == PLUGIN_B


def test_duplicate_is_refused_naming_the_plugin_that_registered_it_first():
    registry = Registry()
    with registry.plugin_scope(PLUGIN_A):
        registry.add(make_measure("c1"))
    with registry.plugin_scope(PLUGIN_B), pytest.raises(RegistrationError) as raised:
        registry.add(make_measure("c1", family="other"))
    message = str(raised.value)
    assert "'c1' is already registered by plugin 'plugin_a' (plugin-a 1.2)" in message
    assert "plugin 'plugin_b'" in message
    assert registry.get("c1").family == "intraclass clustering"


def test_duplicate_of_a_direct_add_is_refused():
    registry = registry_of("c1")
    with pytest.raises(RegistrationError, match="already registered by a direct registry.add"):
        registry.add(make_measure("c1"))


def test_plugin_scope_removes_what_a_failing_plugin_added():
    registry = registry_of("c1")
    with pytest.raises(RuntimeError, match="half-way"), registry.plugin_scope(PLUGIN_A):
        registry.add(make_measure("c2"))
        raise RuntimeError("half-way")
    assert registry.names() == ["c1"]
    with registry.plugin_scope(PLUGIN_B):  # the scope is closed again, so a new one opens
        registry.add(make_measure("c2"))
    assert registry.get("c2").plugin == PLUGIN_B


def test_freeze_refuses_later_adds_but_keeps_lookups():
    registry = registry_of("c1")
    registry.freeze()
    assert registry.frozen
    with pytest.raises(RegistrationError, match="frozen"):
        registry.add(make_measure("c2"))
    assert registry.get("c1").name == "c1"
    assert [m.name for m in registry.list("c*")] == ["c1"]


# -- get and list -------------------------------------------------------------------------------


def test_unknown_name_suggests_close_names_and_lists_all():
    registry = registry_of("c1", "c2", "sharpness_sigma")
    with pytest.raises(UnknownMeasureError) as raised:
        registry.get("sharpnes_sigma")
    assert isinstance(raised.value, KeyError)
    assert str(raised.value) == (
        "unknown measure 'sharpnes_sigma'; did you mean 'sharpness_sigma'? "
        "Registered measures: c1, c2, sharpness_sigma."
    )


def test_unknown_name_without_close_match_still_lists_all():
    with pytest.raises(UnknownMeasureError, match=r"^unknown measure 'zzz'\. Registered measures: c1, c2\.$"):
        registry_of("c1", "c2").get("zzz")


def test_unknown_name_in_an_empty_registry_says_nothing_is_registered():
    with pytest.raises(UnknownMeasureError, match="no measures are registered"):
        Registry().get("c1")


def test_list_selects_by_fnmatch_in_registration_order():
    registry = registry_of("sharpness_sigma", "c1", "c2", "c3", "sharpness_alpha")
    names = registry.names()
    assert [m.name for m in registry.list()] == names
    assert [m.name for m in registry.list("c*")] == ["c1", "c2", "c3"]
    assert [m.name for m in registry.list(["c3", "sharp*"])] == ["sharpness_sigma", "c3", "sharpness_alpha"]
    assert [m.name for m in registry.list(" c[13] , *alpha ")] == ["c1", "c3", "sharpness_alpha"]
    assert [m.name for m in registry.list("c1,c1,c*")] == ["c1", "c2", "c3"]  # each once


def test_list_pattern_that_matches_nothing_is_an_error_naming_it():
    registry = registry_of("c1", "c2")
    with pytest.raises(UnknownMeasureError, match=re.escape("no measure matches 'x*'")):
        registry.list("c1,x*")
    with pytest.raises(UnknownMeasureError, match=re.escape("no measure matches 'c11'; did you mean 'c1'")):
        registry.list(["c11"])
    with pytest.raises(ValueError, match="no measure name or pattern"):
        registry.list(" , ")


def test_plugin_info_labels():
    assert PLUGIN_A.label == "plugin-a 1.2"
    assert PLUGIN_B.label == "/tmp/plugin_b.py"
    assert PluginInfo("pkg.mod", "module", "pkg.mod", version="0.3").label == "pkg.mod 0.3"
    assert PluginInfo("pkg.mod", "module", "pkg.mod").label == "pkg.mod"
    assert PLUGIN_A.describe() == "plugin 'plugin_a' (plugin-a 1.2)"
