// The fleet's fault thresholds, drawn on the charts: the firmware's DEFAULTS["limits"]
// (firmware/motorguard/config.py), and the speed bounds of a set_speed command
// (schemas/v1/command.schema.json). tests/dashboard/test_dashboard_build.py holds both copies equal.
export const LIMITS = {
  combined_temp_c: 34.0,
  combined_current_a: 1.7,
  hard_temp_c: 60.0,
  hard_current_a: 3.0,
};

export const SPEED = { min: 1, max: 180 };

// How the page shows each state: an icon and a word, never a colour alone.
export const STATES = {
  RUNNING: { icon: "▶", label: "RUNNING", rank: 1 },
  STOPPED: { icon: "■", label: "STOPPED", rank: 2 },
  FAULT: { icon: "⚠", label: "FAULT", rank: 0 },
};
