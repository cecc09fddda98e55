# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# The filter's tests put the same host in front of the modules: the scripted agent and the
# module runner of the modules' tests.
from ansible_collections.hybridops.arc.tests.unit.plugins.modules import conftest as modules

agent = modules.agent
run_module = modules.run_module
