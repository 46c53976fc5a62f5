## GNU Octave cross-check of the ARX reference figures (third, independent oracle).
##
## Run in this directory AFTER make_reference.py:   octave --no-gui -q arx_octave.m
## Needs Debian's octave + octave-control (Octave 7.3.0, control 3.4.0 were used).
## Reads <name>.csv and <name>_ref.json, writes <name>_octave.json for
## name = arx221, arx_miso, arx_big, arx_ill, ice_river (measured data; its output column is
## flow_jok: the output is always the last CSV column, its mean is looked up by its name).
##
## Findings about control 3.4.0 arx (from /usr/share/octave/packages/control-3.4.0/arx.m
## and @iddata/nkshift.m), see README.md:
##  * Octave's B has a built-in one-sample delay: its regressors are u(t-1)..u(t-nb), and its
##    'nk' shifts by nk MORE samples (nkshift), so Octave nk = MATLAB nk - 1. The returned
##    B(z^-1) carries 1 + nk leading zeros.
##  * 'nk' must be one non-negative scalar (no per-input nk). For MISO with nk = [1, 4] the
##    inputs are pre-shifted here: input i is delayed by nk_i - min(nk) samples and the first
##    max(nk) - min(nk) rows are dropped; then arx is called with nk = min(nk) - 1.
##  * MATLAB nk = 0 (ice_river: same-day inputs) would be Octave nk = -1, which arx rejects.
##    Then every input is ADVANCED by one sample (u'(t) = u(t+1), lead = 1) and arx is called
##    with nk = 0: its regressor u'(t-1) is u(t). The last u' sample has no u(N) behind it and
##    is set to 0; arx never reads it (PhiU is built from U(1:end-1)), which is checked below
##    by a second call with 1e6 there, which must give the same theta bit for bit.
##  * Regression rows (in the original time axis, 0-based):
##        t = max(na, max_i nb_i) + max_i nk_i - 1 + lead .. N-1
##    vs vmmon's t0 = max(na, max_i(nk_i + nb_i - 1)); identical for arx221, arx_ill and
##    ice_river, one row later for arx_miso (5 vs 4), three rows later for arx_big (69 vs 66).
##  * No detrending inside arx: the data given to it are detrended here with the exact
##    means recorded in <name>_ref.json.
##  * Solver: QR of [Phi, Y] ("square-root algorithm"), then SVD of R1 (pseudo-inverse).
## In addition, Octave's mldivide (Phi \ y, QR-based) is run on vmmon's own window, built
## here independently of numpy, and the RSS of each solution is computed here.

pkg load control
1;

function v = means_from_json (txt)
  ## exact means: str2double of the repr() strings (jsondecode is not correctly rounded)
  blk = regexp (txt, '"means":\s*\{([^}]*)\}', 'tokens', 'once'){1};
  tok = regexp (blk, '"(\w+)":\s*([-+0-9.eE]+)', 'tokens');
  v = struct ();
  for k = 1:numel (tok)
    v.(tok{k}{1}) = str2double (tok{k}{2});
  endfor
endfunction

function [Phi, tgt] = build_phi (y, U, na, nb, nk, t0)
  ## 1-based: row for time t (0-based) uses index t+1
  N = numel (y);
  rows = (t0:N-1)' + 1;
  Phi = zeros (numel (rows), na + sum (nb));
  c = 0;
  for i = 1:na
    c += 1; Phi(:, c) = -y(rows - i);
  endfor
  for m = 1:numel (nb)
    for j = 1:nb(m)
      c += 1; Phi(:, c) = U(rows - nk(m) - j + 1, m);
    endfor
  endfor
  tgt = y(rows);
endfunction

function s = jvec (v)
  s = ["[" strjoin(arrayfun (@(x) sprintf ("%.17g", x), v(:)', "uniformoutput", false), ", ") "]"];
endfunction

function s = jivec (v)
  s = ["[" strjoin(arrayfun (@(x) sprintf ("%d", x), v(:)', "uniformoutput", false), ", ") "]"];
endfunction

function [sc, el] = relerr (a, b)
  a = a(:); b = b(:);
  d = abs (a - b);
  sc = max (d) / max (abs (b));
  bb = abs (b); bb(bb == 0) = 1;
  el = max (d ./ bb);
endfunction

function [A, B] = arx_polys (sys, nb, nk_oct)
  [num, den] = filtdata (sys);
  A = den{1,1}(:)';
  B = cell (1, numel (nb));
  for i = 1:numel (nb)
    p = num{1,i}(:)';
    lead = 1 + nk_oct;                 # b0 = 0 plus nk zeros
    assert (all (p(1:lead) == 0));
    B{i} = p(lead+1:lead+nb(i));
    assert (all (p(lead+nb(i)+1:end) == 0));
  endfor
endfunction

[~, info] = pkg ("list");
ctrl_ver = "?";
for k = 1:numel (info)
  if (strcmp (info{k}.name, "control"))
    ctrl_ver = info{k}.version;
  endif
endfor
printf ("Octave %s, control %s\n", OCTAVE_VERSION, ctrl_ver);

names = {"arx221", "arx_miso", "arx_big", "arx_ill", "ice_river"};
for n_ = 1:numel (names)
  name = names{n_};
  txt = fileread ([name "_ref.json"]);
  ref = jsondecode (txt);              # orders and comparison values (1-ulp parse is fine)
  mu = means_from_json (txt);
  fid = fopen ([name ".csv"]); hdr = strsplit (fgetl (fid), ","); fclose (fid);
  D = dlmread ([name ".csv"], ",", 1, 0);
  na = ref.na; nb = ref.nb(:)'; nk = ref.nk(:)';
  m = numel (nb);
  yname = hdr{end};
  y = D(:, end) - mu.(yname);
  U = zeros (rows (D), m);
  own_mean_diff = abs (mean (D(:, end)) - mu.(yname)) / abs (mu.(yname));
  for i = 1:m
    U(:, i) = D(:, 1 + i) - mu.(hdr{1 + i});
    own_mean_diff = max (own_mean_diff, abs (mean (D(:, 1 + i)) - mu.(hdr{1 + i})) / abs (mu.(hdr{1 + i})));
  endfor
  N = numel (y);

  ## MATLAB nk -> Octave: pre-shift inputs (MISO), nk_oct = min(nk) - 1; if min(nk) = 0,
  ## advance all inputs by one sample (lead = 1) and use nk_oct = 0
  sh = nk - min (nk);
  Dm = max (sh);
  lead = double (min (nk) == 0);
  Ys = y(Dm+1:end);
  Us = zeros (N - Dm, m);
  for i = 1:m
    Us(:, i) = U(Dm+1-sh(i):N-sh(i), i);
  endfor
  if (lead)
    Us = [Us(2:end, :); zeros(1, m)];
  endif
  nk_oct = min (nk) - 1 + lead;
  dat = iddata (Ys, Us, 1);
  ## nb: scalar (SISO) or 1-by-m row (one output, m inputs), as arx requires
  if (nk_oct > 0)
    sys = arx (dat, "na", na, "nb", nb, "nk", nk_oct);
  else
    sys = arx (dat, "na", na, "nb", nb);
  endif
  [A, B] = arx_polys (sys, nb, nk_oct);
  theta_arx = [A(2:end), cell2mat(B)]';
  if (lead)
    ## the padded last input sample is never used: another value there changes nothing
    Us2 = Us; Us2(end, :) = 1e6;
    [A2, B2] = arx_polys (arx (iddata (Ys, Us2, 1), "na", na, "nb", nb), nb, nk_oct);
    assert (isequal ([A2(2:end), cell2mat(B2)]', theta_arx));
  endif

  t0_oct = max ([na, nb]) + max (nk) - 1 + lead;
  [Po, to] = build_phi (y, U, na, nb, nk, t0_oct);
  rss_arx = sum ((to - Po * theta_arx) .^ 2);
  ## vmmon's window, Octave's mldivide
  t0 = max ([na, nk + nb - 1]);
  [Pm, tm] = build_phi (y, U, na, nb, nk, t0);
  theta_mld = Pm \ tm;
  rss_mld = sum ((tm - Pm * theta_mld) .^ 2);

  alt = ref.alt_windows.octave;
  assert (alt.t0 == t0_oct && ref.t0 == t0);
  [s1, e1] = relerr (theta_arx, alt.theta);
  [s2, e2] = relerr (rss_arx, alt.RSS);
  [s3, e3] = relerr (theta_arx, ref.theta);
  [s4, e4] = relerr (theta_mld, ref.theta);
  [s5, e5] = relerr (rss_mld, ref.RSS);
  printf ("%s: t0 vmmon %d, octave arx %d (nk_oct %d, input shifts %s, lead %d)\n", name, t0, t0_oct, nk_oct, mat2str (sh), lead);
  printf ("  arx theta vs numpy (octave window): scaled %.2e elementwise %.2e; RSS rel %.2e\n", s1, e1, s2);
  printf ("  arx theta vs numpy (vmmon window):  scaled %.2e elementwise %.2e (differs only through the window)\n", s3, e3);
  printf ("  mldivide (vmmon window) vs numpy:   scaled %.2e elementwise %.2e; RSS rel %.2e\n", s4, e4, s5);
  printf ("  Octave mean() vs recorded means: max rel diff %.2e\n", own_mean_diff);

  fid = fopen ([name "_octave.json"], "w");
  fprintf (fid, "{\n");
  fprintf (fid, "  \"dataset\": \"%s.csv\",\n", name);
  fprintf (fid, "  \"octave_version\": \"%s\",\n  \"control_version\": \"%s\",\n", OCTAVE_VERSION, ctrl_ver);
  fprintf (fid, "  \"na\": %d,\n  \"nb\": %s,\n  \"nk_matlab\": %s,\n", na, jivec (nb), jivec (nk));
  if (lead)
    fprintf (fid, "  \"octave_call\": {\"nk\": %d, \"input_shifts\": %s, \"rows_dropped\": %d, \"input_lead\": %d, \"lead_note\": \"MATLAB nk = 0: every input advanced one sample (u'(t) = u(t+1), last u' = 0, never read by arx), then Octave nk = 0\"},\n", nk_oct, jivec (sh), Dm, lead);
  else
    fprintf (fid, "  \"octave_call\": {\"nk\": %d, \"input_shifts\": %s, \"rows_dropped\": %d},\n", nk_oct, jivec (sh), Dm);
  endif
  fprintf (fid, "  \"t0_vmmon\": %d,\n  \"t0_octave\": %d,\n  \"N_used_octave\": %d,\n", t0, t0_oct, rows (Po));
  fprintf (fid, "  \"A\": %s,\n", jvec (A));
  fprintf (fid, "  \"B\": [\n");
  for i = 1:m
    sep = ","; if (i == m) sep = ""; endif
    fprintf (fid, "    %s%s\n", jvec (B{i}), sep);
  endfor
  fprintf (fid, "  ],\n");
  fprintf (fid, "  \"theta\": %s,\n", jvec (theta_arx));
  fprintf (fid, "  \"RSS_octave_window\": %.17g,\n", rss_arx);
  fprintf (fid, "  \"mldivide_vmmon_window\": {\"theta\": %s, \"RSS\": %.17g},\n", jvec (theta_mld), rss_mld);
  fprintf (fid, "  \"compare\": {\n");
  fprintf (fid, "    \"arx_vs_numpy_octave_window\": {\"theta_scaled\": %.3g, \"theta_elementwise\": %.3g, \"RSS_rel\": %.3g},\n", s1, e1, s2);
  fprintf (fid, "    \"arx_vs_numpy_vmmon_window\": {\"theta_scaled\": %.3g, \"theta_elementwise\": %.3g},\n", s3, e3);
  fprintf (fid, "    \"mldivide_vs_numpy_vmmon_window\": {\"theta_scaled\": %.3g, \"theta_elementwise\": %.3g, \"RSS_rel\": %.3g},\n", s4, e4, s5);
  fprintf (fid, "    \"octave_mean_vs_recorded_means_rel\": %.3g\n", own_mean_diff);
  fprintf (fid, "  }");

  if (strcmp (name, "arx221"))
    ## the naive call with MATLAB's nk = 3: Octave then uses a delay of 4
    sysn = arx (dat, "na", na, "nb", nb, "nk", nk);
    [An, Bn] = arx_polys (sysn, nb, nk);
    [Pn, tn] = build_phi (y, U, na, nb, nk + 1, max ([na, nb]) + nk);
    rss_n = sum ((tn - Pn * [An(2:end), Bn{1}]') .^ 2);
    [~, dnum] = filtdata (sysn);
    fprintf (fid, ",\n  \"naive_nk3_call\": {\"note\": \"arx(dat,'na',2,'nb',2,'nk',3): Octave's nk=3 is MATLAB's nk=4\", ");
    fprintf (fid, "\"A\": %s, \"B_with_leading_zeros\": %s, \"V\": %.17g}", jvec (An), jvec ([zeros(1, 1 + nk), Bn{1}]), rss_n / rows (Pn));
    printf ("  naive nk=3 call: B = %s, V = %.6g (vs %.6g)\n", mat2str ([zeros(1, 1 + nk), Bn{1}], 5), rss_n / rows (Pn), ref.V);
  endif
  fprintf (fid, "\n}\n");
  fclose (fid);
  assert (s1 < 1e-10 && s2 < 1e-10 && s4 < 1e-10 && s5 < 1e-10);
endfor
printf ("all Octave checks passed\n");
