// Runs steps.py on MicroPython's 32-bit WebAssembly port (npm @micropython/micropython-webassembly-pyscript)
// with the compiled firmware and the stand-ins in its filesystem, and prints one JSON line per step.
// Every chunk runs in its own runPython call, and the collection after it in another: this port
// finds its roots reliably only between calls.  node run.mjs FIRMWARE_DIR STUBS_DIR STEPS_FILE
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript/micropython.mjs";
import fs from "fs";

const [firmware, stubs, stepsFile] = process.argv.slice(2);
const mp = await loadMicroPython({ heapsize: 4 * 1024 * 1024, stdout: (s) => process.stdout.write(s + "\n") });

function copy(src, dst) {
  try { mp.FS.mkdir(dst); } catch (e) { /* exists */ }
  for (const name of fs.readdirSync(src)) {
    const s = src + "/" + name;
    if (fs.statSync(s).isDirectory()) copy(s, dst + "/" + name);
    else mp.FS.writeFile(dst + "/" + name, fs.readFileSync(s));
  }
}
copy(firmware, "/fw");
copy(stubs, "/stubs");
mp.runPython("import sys\nsys.path.insert(0, '/fw')\nsys.path.insert(0, '/stubs')");
const measure = "import gc, json\ngc.collect()\ngc.collect()\nprint(json.dumps({'step': _name, 'alloc': gc.mem_alloc()}))";
for (const chunk of fs.readFileSync(stepsFile, "utf8").split("\n#STEP\n")) {
  mp.runPython(chunk);
  mp.runPython(measure);
}
