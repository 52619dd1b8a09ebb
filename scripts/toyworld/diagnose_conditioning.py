"""Does the model use the shape word? Denoising loss on real latents of each shape at several t with the
right caption, the wrong shape word and the wrong colour (usage: diagnose_conditioning.py [ema_]);
the check that found the stuck shape conditioning (see README)."""
import sys
import torch.nn.functional as F
from common import *
import nets, world, numpy as np
from train_sd import build
which = sys.argv[1] if len(sys.argv) > 1 else ""
ck=torch.load(WORK+'/sd_ckpt.pt'); tok=world.Tokenizer()
u,t=build(tok); u.load_state_dict(ck[which+'unet']); t.load_state_dict(ck[which+'text']); u.eval(); t.eval()
lat=torch.load(WORK+'/latents.pt'); M,scale=lat['mean'],lat['scale']
L=np.load(WORK+'/train.npz')['labels']
ac=alphas_cumprod(); g=torch.Generator().manual_seed(0)
print('step',ck['step'])
with torch.no_grad():
  for T in [200,500,800,950]:
    res=np.zeros((2,))
    n=0
    for s in range(5):
      idx=np.where((L[:,0]==s)&(L[:,1]==0))[0][:40]
      z0=M[idx]*scale; noise=torch.randn(z0.shape,generator=g); a=ac[T]
      xt=a.sqrt()*z0+(1-a).sqrt()*noise
      right=t(torch.tensor([tok(f'a photo of a red {world.SHAPES[s]}')]*len(idx)))
      wrong=t(torch.tensor([tok(f'a photo of a red {world.SHAPES[(s+1)%5]}')]*len(idx)))
      wrongc=t(torch.tensor([tok(f'a photo of a blue {world.SHAPES[s]}')]*len(idx)))
      tt=torch.full((len(idx),),T)
      l=[F.mse_loss(u(xt,tt,c),noise).item() for c in (right,wrong,wrongc)]
      print(T, world.SHAPES[s], 'loss right %.4f wrong-shape %.4f wrong-colour %.4f'%tuple(l))
  ids=torch.tensor([tok(f'a photo of a red {s}') for s in world.SHAPES])
  h=t(ids); print('context diff between shapes (rel)', ((h[0]-h[1]).norm()/h[0].norm()).item(), 'token rows norm', t.embeddings.token_embedding.weight.norm(dim=1).mean().item())
