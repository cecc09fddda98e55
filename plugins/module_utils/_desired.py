# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Private to this collection: every "is the host as wanted?" decision, written once. The modules
# use it on the host; the arc_agent role reaches it through the hybridops.arc.arc_agent_plan
# filter on the controller, so that the role and the modules cannot disagree.
#
# - settings: how a wanted local setting compares with the agent's (agent_config);
# - connection: whether the connected resource is the requested one (connection);
# - tags: the tags a machine resource must end up with (connection);
# - credentials: which credential options go together (every module and the role).

from ansible.module_utils.compat.version import LooseVersion

# ---------------------------------------------------------------- local settings
CASE_INSENSITIVE_VALUES = ("config.mode", "connection.type")
CASE_INSENSITIVE_ITEMS = ("extensions.allowlist", "extensions.blocklist", "proxy.bypass")
LIST_CHANGE_KEYS = ("add", "remove")


class SettingError(Exception):
    """A setting that cannot be applied as given (found before any change)."""


def text(value):
    """The value as ``azcmagent config set`` takes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(text(item) for item in value)
    return str(value).strip()


def fold(key, item):
    item = text(item)
    return item.lower() if key in CASE_INSENSITIVE_ITEMS else item


def same_list(key, left, right):
    return set(fold(key, i) for i in left) == set(fold(key, i) for i in right)


def same_scalar(key, current, wanted):
    if isinstance(current, bool):
        return text(wanted).lower() == text(current)
    if isinstance(current, int):
        try:
            return int(text(wanted)) == current
        except ValueError:
            return False
    if key in CASE_INSENSITIVE_VALUES:
        return text(wanted).lower() == text(current).lower()
    return text(wanted) == text(current)


def same(key, current, wanted):
    """Whether a setting's current value is the wanted one, compared as the agent stores it."""
    if isinstance(current, list):
        return isinstance(wanted, list) and same_list(key, current, wanted)
    return same_scalar(key, current, wanted)


def as_list(key, value):
    if value is None:
        return []
    if isinstance(value, list):
        return [text(i) for i in value]
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [i.strip() for i in text(value).split(",")] if text(value) else []
    raise SettingError("%s is a list: give a list, or a dictionary with add and remove" % key)


def dedupe(key, items):
    seen = set()
    result = []
    for item in items:
        if fold(key, item) not in seen:
            seen.add(fold(key, item))
            result.append(item)
    return result


def desired_list(key, current, spec):
    """The list a list setting must hold: ``spec`` is a list (or comma-separated string), or
    ``{add: [...], remove: [...]}`` applied to ``current``."""
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - set(LIST_CHANGE_KEYS))
        if unknown:
            raise SettingError(
                "%s: a change of a list takes the keys add and remove, not %s" % (key, ", ".join(unknown))
            )
        remove = set(fold(key, i) for i in as_list(key, spec.get("remove")))
        result = [i for i in current if fold(key, i) not in remove]
        present = set(fold(key, i) for i in result)
        for item in as_list(key, spec.get("add")):
            if fold(key, item) not in present:
                result.append(text(item))
                present.add(fold(key, item))
        return result
    return dedupe(key, as_list(key, spec))


def predict(before, value):
    """The value as the agent would store it, typed like the current one."""
    if isinstance(before, bool):
        return text(value).lower() == "true"
    if isinstance(before, int):
        try:
            return int(text(value))
        except ValueError:
            return text(value)
    return text(value)


def normalise_settings(settings):
    """Setting names as the agent keys them (lower case, no blanks around)."""
    return dict((key.strip().lower(), value) for key, value in settings.items())


def unknown_settings(current, wanted):
    """The error for names the agent does not have, or None."""
    unknown = sorted(key for key in wanted if key not in current)
    if not unknown:
        return None
    return SettingError(
        "unknown setting %s; the agent's settings are: %s" % (", ".join(unknown), ", ".join(sorted(current)))
    )


def settings_plan(current, wanted):
    """[(key, value, predicted)] for each wanted setting (normalised names) that differs from
    ``current``, in the order of the names. Raises SettingError for a value that cannot be set."""
    error = unknown_settings(current, wanted)
    if error:
        raise error
    plan = []
    for key in sorted(wanted):
        spec = wanted[key]
        before = current[key]
        if isinstance(before, list):
            value = desired_list(key, before, spec)
        elif isinstance(spec, (list, dict)):
            raise SettingError("%s is not a list: give a string, number or boolean" % key)
        elif spec is None:
            raise SettingError("%s: no value given; use state=absent to clear a setting" % key)
        else:
            value = spec
        if not same(key, before, value):
            plan.append((key, value, value if isinstance(value, list) else predict(before, value)))
    return plan


def clears_plan(current, defaults, names):
    """The settings among ``names`` that are not at their default (``defaults``: ``config info``)."""
    return [key for key in names if key in defaults and not same(key, current.get(key), defaults[key])]


def settings_differ(current, wanted):
    """Whether the agent_config module would change something for ``wanted`` (given with any
    letter case). A setting it would refuse counts as a difference: the module then says why."""
    try:
        return bool(settings_plan(current, normalise_settings(wanted)))
    except SettingError:
        return True


# ---------------------------------------------------------------- connection
# Requested option -> key of `azcmagent show -j`. Compared without regard to case, as ARM does;
# locations also without blanks ("West Europe" is westeurope). An option not given (empty)
# accepts whatever the machine is connected to: an omitted resource name keeps the name the
# machine has, and only a new connection takes the short host name (as azcmagent connect does).
IDENTITY = (
    ("resource_name", "resourceName"),
    ("resource_group", "resourceGroup"),
    ("subscription_id", "subscriptionId"),
    ("tenant_id", "tenantId"),
    ("location", "location"),
)


def normalise_location(location):
    return (location or "").replace(" ", "").lower()


def connection_mismatch(shown, requested):
    """Each requested field that differs from the resource ``shown`` (``azcmagent show -j``):
    {field: {current, requested}}. Empty when it is the requested resource."""
    differs = {}
    for option, key in IDENTITY:
        wanted = requested.get(option) or ""
        if not wanted:
            continue
        current = shown.get(key) or ""
        left, right = current.lower(), wanted.lower()
        if option == "location":
            left, right = normalise_location(current), normalise_location(wanted)
        if left != right:
            differs[option] = {"current": current, "requested": wanted}
    return differs


def gateway_mode_missing(shown, requested):
    """A gateway is requested (``gateway_id``) and the machine does not work through one (its
    ``Gateway URL`` is empty: not in gateway mode)."""
    return bool(requested.get("gateway_id")) and not shown.get("gatewayUrl")


def connected_as_requested(shown, requested):
    """Connected (status and resource) to the requested resource, through the requested gateway."""
    return (
        bool(shown.get("resourceId"))
        and shown.get("status") == "Connected"
        and not connection_mismatch(shown, requested)
        and not gateway_mode_missing(shown, requested)
    )


# ---------------------------------------------------------------- tags
def desired_tags(current, wanted, purge):
    """The tags a resource with ``current`` tags must have: ``wanted`` added (values as strings),
    and with ``purge`` nothing else."""
    wanted = dict((str(name), str(value)) for name, value in (wanted or {}).items())
    return wanted if purge else dict(current or {}, **wanted)


def tags_differ(current, wanted, purge):
    return desired_tags(current, wanted, purge) != dict(current or {})


# ---------------------------------------------------------------- credentials
# Exactly one credential; each credential option needs the options it names; a secret never
# goes on a command line (_common.ArcModule.credential_flags puts it in a 0600 file).
CREDENTIALS = ("service_principal_secret", "service_principal_cert", "access_token")
REQUIRES = (
    ("service_principal_secret", "service_principal_id"),
    ("service_principal_cert", "service_principal_id"),
    ("service_principal_id", "tenant_id"),
)


def given_credentials(values):
    return [option for option in CREDENTIALS if values.get(option)]


def credential_problems(values, required, name=None):
    """Sentences naming what is wrong with the credential options in ``values`` (empty when
    nothing is). ``name`` turns an option into the name the user wrote (a role variable)."""
    name = name or str
    given = given_credentials(values)
    problems = []
    if required and not given:
        problems.append(
            "a credential is needed: set %s with %s, or %s (keep secrets in a vault or an AWX credential)"
            % (name("service_principal_id"), name("service_principal_secret"), name("access_token"))
        )
    if len(given) > 1:
        problems.append(
            "set only one credential: %s, not both" % " or ".join(name(option) for option in given)
        )
    for option, needs in REQUIRES:
        if values.get(option) and not values.get(needs):
            problems.append("%s needs %s: set it" % (name(option), name(needs)))
    return problems


# ---------------------------------------------------------------- versions
def is_downgrade(installed, wanted):
    """Whether installing ``wanted`` over ``installed`` goes back to an older version."""
    return bool(installed) and LooseVersion(str(installed)) > LooseVersion(str(wanted))
