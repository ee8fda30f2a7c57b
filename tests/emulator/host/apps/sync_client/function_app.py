import azure.durable_functions as df
import azure.functions as func

app = df.DFApp()


@app.route(route="start")
@app.durable_client_input(client_name="client")
def start(req: func.HttpRequest, client) -> func.HttpResponse:
    return func.HttpResponse("never")
