"""Labels wing: human preferences — comparisons, rankings, label drives and their assignments,
agreement statistics, export and backup. It reads the engine (to make responses) and the store;
training reads it, never the other way round."""
