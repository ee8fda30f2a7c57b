import azure.functions as func

app = func.FunctionApp()


@app.route(route="ok")
def ok(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("ok")


@app.queue_trigger(arg_name="msg", queue_name="work", connection="AzureWebJobsStorage")
def on_queue(msg: func.QueueMessage) -> None:
    pass
