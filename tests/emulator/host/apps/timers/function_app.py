"""Test app with timer triggers: every 10 minutes (starts an orchestration) and a run-on-startup one."""

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

TICKS: list[bool] = []


@app.timer_trigger(schedule="0 */10 * * * *", arg_name="timer", run_on_startup=False)
@app.durable_client_input(client_name="client")
async def every_ten_minutes(timer: func.TimerRequest, client) -> None:
    await client.start_new("tick", None, timer.past_due)


@app.schedule(schedule="%STARTUP_SCHEDULE%", arg_name="timer", run_on_startup=True)
def on_startup(timer: func.TimerRequest) -> None:
    TICKS.append(timer.past_due)


@app.orchestration_trigger(context_name="context")
def tick(context: df.DurableOrchestrationContext):
    return {"at": context.current_utc_datetime.isoformat(), "pastDue": context.get_input()}
