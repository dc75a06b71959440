-- :checkhealth basis: the binary, the server starting, the model, the sandbox
-- and the feedback store, each with what to do when it fails.
local M = {}

local health = vim.health

local function run(cmd, timeout)
  local ok, job = pcall(vim.system, cmd, { text = true })
  if not ok then
    return nil, tostring(job)
  end
  local r = job:wait(timeout or 10000)
  return r
end

-- Starts `basis lsp`, sends `initialize` and waits for its answer.
local function server_starts(cmd)
  local out = ''
  local ok, job = pcall(vim.system, cmd, {
    stdin = true,
    stdout = function(_, data)
      if data then
        out = out .. data
      end
    end,
  })
  if not ok then
    return false, tostring(job)
  end
  local body = vim.json.encode({
    jsonrpc = '2.0',
    id = 1,
    method = 'initialize',
    params = { processId = vim.fn.getpid(), rootUri = vim.NIL, capabilities = vim.empty_dict() },
  })
  job:write(('Content-Length: %d\r\n\r\n%s'):format(#body, body))
  local answered = vim.wait(15000, function()
    return out:find('"capabilities"', 1, true) ~= nil
  end, 50)
  pcall(function()
    job:kill(15)
  end)
  if not answered then
    return false, 'no answer to `initialize` within 15 s' .. (out ~= '' and (': ' .. out:sub(1, 200)) or '')
  end
  local name = out:match('"serverInfo":%s*{[^}]*"name":%s*"([^"]*)"') or 'basis'
  local version = out:match('"serverInfo":%s*{[^}]*"version":%s*"([^"]*)"')
  return true, version and (name .. ' ' .. version) or name
end

local function data_home()
  local home = os.getenv('BASIS_HOME')
  if home and home ~= '' then
    return home
  end
  local xdg = os.getenv('XDG_DATA_HOME')
  if xdg and xdg ~= '' then
    return xdg .. '/basis'
  end
  return vim.fn.expand('~/.local/share/basis')
end

function M.check()
  local basis = require('basis')
  local config = basis.config
  local cmd = config.cmd
  local bin = cmd[1]

  health.start('basis: binary')
  if vim.fn.executable(bin) ~= 1 then
    health.error(('`%s` is not executable or not on PATH'):format(bin), {
      'Build it with `cargo build --release` in the Basis repository and put target/release on PATH,',
      "or give its path: require('basis').setup({ cmd = { '/path/to/basis', 'lsp' } })",
    })
    return
  end
  local v = run({ bin, '--version' })
  if v and v.code == 0 then
    health.ok(('%s (%s)'):format(vim.trim(v.stdout), vim.fn.exepath(bin)))
  else
    health.error(('`%s --version` failed: %s'):format(bin, v and vim.trim(v.stderr or '') or 'did not run'))
    return
  end

  health.start('basis: language server')
  local started, detail = server_starts(cmd)
  if started then
    health.ok('`' .. table.concat(cmd, ' ') .. '` answers initialize (' .. detail .. ')')
  else
    health.error('`' .. table.concat(cmd, ' ') .. '` did not start: ' .. detail, { 'Run it in a terminal to see its error.' })
  end
  local client = basis.client()
  if client then
    health.ok(('attached as client %d, position encoding %s'):format(client.id, client.offset_encoding))
  else
    health.info('no basis client is running now (it starts with a buffer of: ' .. table.concat(config.filetypes, ', ') .. ')')
  end

  health.start('basis: model')
  local wanted = (config.init_options or {}).model or 'smollm2-135m-instruct'
  local list = run({ bin, 'model', 'list' })
  local found = nil
  if list and list.code == 0 then
    for line in vim.gsplit(list.stdout, '\n', { plain = true }) do
      local fields = vim.split(line, '\t', { plain = true })
      if fields[1] == wanted or fields[3] == wanted then
        found = fields[3]
      end
    end
  end
  if found then
    health.ok(('%s: %s'):format(wanted, found))
  elseif wanted:find('/') and vim.fn.filereadable(wanted) == 1 then
    health.ok('model file ' .. wanted)
  else
    health.error(('the model %s is not in the store'):format(wanted), { ('Run `%s model pull` to download the default model.'):format(bin) })
  end

  health.start('basis: sandbox')
  if vim.fn.executable('bwrap') ~= 1 then
    health.warn('bubblewrap (bwrap) is not installed: generated tests run without isolation (network and home reachable)', {
      'Debian/Ubuntu: sudo apt-get install bubblewrap',
    })
  else
    local probe = run({ 'bwrap', '--ro-bind', '/', '/', '--unshare-net', '--dev', '/dev', 'true' })
    if probe and probe.code == 0 then
      health.ok('bubblewrap isolates generated code (no network, read-only system)')
    else
      health.warn('bwrap is installed but cannot create a sandbox here: ' .. (probe and vim.trim(probe.stderr or '') or 'did not run'), {
        'Unprivileged user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1).',
      })
    end
  end

  health.start('basis: feedback store')
  local fb = (config.init_options or {}).feedback or {}
  if fb.enabled == false then
    health.info('feedback is off (init_options.feedback.enabled = false)')
    return
  end
  local path = (type(fb.path) == 'string' and fb.path) or (data_home() .. '/feedback/feedback.sqlite3')
  local dir = vim.fs.dirname(path)
  vim.fn.mkdir(dir, 'p')
  local probe = dir .. '/.basis-health-' .. vim.fn.getpid()
  local f = io.open(probe, 'w')
  if f then
    f:close()
    os.remove(probe)
    health.ok(('writable: %s (level %s)'):format(path, fb.level or 'full'))
  else
    health.error(('the feedback store %s cannot be written'):format(path), {
      'Give a writable init_options.feedback.path, or turn feedback off with feedback.enabled = false.',
    })
  end
end

return M
