# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

import pytest
from ansible_collections.hybridops.arc.tests.unit.plugins.control_plane_standin import serve


@pytest.fixture
def control_plane(tmp_path):
    """A real HTTPS stand-in for the control plane's token service and management API."""
    with serve(tmp_path) as plane:
        yield plane
