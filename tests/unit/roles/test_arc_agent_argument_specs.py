# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The arc_agent role documents every variable it has, with its real default (STYLE item 16)."""

import os

import yaml

ROLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "arc_agent")


def _load(*parts):
    with open(os.path.join(ROLE, *parts)) as f:
        return yaml.safe_load(f)


def test_argument_specs_and_defaults_name_the_same_variables():
    defaults = _load("defaults", "main.yml")
    options = _load("meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(options) == sorted(defaults), "only in argument_specs: %s; only in defaults: %s" % (
        sorted(set(options) - set(defaults)),
        sorted(set(defaults) - set(options)),
    )


def test_argument_specs_give_the_defaults_of_defaults_main():
    defaults = _load("defaults", "main.yml")
    options = _load("meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    for name, spec in options.items():
        assert spec.get("default") == defaults[name], name
        assert spec.get("description"), name


def test_every_public_variable_is_named_after_the_role():
    for name in _load("defaults", "main.yml"):
        assert name.startswith("arc_agent_"), name
