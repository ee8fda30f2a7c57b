import azure.functions as func

app = func.FunctionApp()


@app.timer_trigger(schedule="*/5 * * * *", arg_name="timer")
def five_fields(timer: func.TimerRequest) -> None:
    pass
