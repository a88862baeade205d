// Requests to the server's JSON API, with the API key when the server wants one.
//
// The key is asked for once (a form on the page, shown on the first 401), kept in this tab's
// sessionStorage and sent as `X-API-Key` with every request.

const KEY_ITEM = "opusagent.apiKey";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let askForKey = null; // a pending prompt, shared by the requests that wait for it

function storedKey() {
  return sessionStorage.getItem(KEY_ITEM);
}

/** Show the page's key form (`#key-form`) and resolve once a key is entered. */
function promptForKey(wrong) {
  if (askForKey) return askForKey;
  const form = document.getElementById("key-form");
  const note = form.querySelector(".key-note");
  note.textContent = wrong ? "That key was refused; try again." : "This server needs its API key.";
  form.hidden = false;
  askForKey = new Promise((resolve) => {
    form.onsubmit = (event) => {
      event.preventDefault();
      const key = form.elements.key.value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY_ITEM, key);
      form.hidden = true;
      form.reset();
      askForKey = null;
      resolve();
    };
  });
  return askForKey;
}

/** GET `path`; resolves to the `Response` (asks for the key and retries on a 401). */
export async function get(path) {
  for (;;) {
    const key = storedKey();
    const response = await fetch(path, { headers: key ? { "X-API-Key": key } : {} });
    if (response.status !== 401) {
      if (response.ok) return response;
      throw new ApiError(response.status, await errorMessage(response));
    }
    await promptForKey(Boolean(key));
  }
}

/** GET `path` as JSON. */
export async function getJSON(path) {
  return (await get(path)).json();
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    return body.error?.message ?? response.statusText;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}
