"""The settings: one table (table.py) read from flags, a TOML file and the environment (load.py).
A leaf: it imports nothing else of marketsrv.
"""

from marketsrv.settings.load import (
    from_env,
    from_toml,
    load,
    load_for_command,
    parse_value,
    validate,
)
from marketsrv.settings.table import (
    ENV_PREFIX,
    SETTINGS,
    SettingInfo,
    Settings,
    SettingsError,
    describe,
    public_settings,
    settings_table,
)

__all__ = [
    "ENV_PREFIX",
    "SETTINGS",
    "SettingInfo",
    "Settings",
    "SettingsError",
    "describe",
    "from_env",
    "from_toml",
    "load",
    "load_for_command",
    "parse_value",
    "public_settings",
    "settings_table",
    "validate",
]
