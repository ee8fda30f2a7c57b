"""``manifest_diff`` (issue 9): what each later ring's machines would install vs the manifest. Being built."""

import azure.durable_functions as df

bp = df.Blueprint()
